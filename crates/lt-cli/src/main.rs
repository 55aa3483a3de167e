//! The `lt` command. It parses flags, wires the library crates together and prints; all the work
//! is done by the libraries (`lt-data`, ...). Errors are printed once, as a chain, with exit code 2.

mod data;
mod experiment;
mod lottery;
mod prune;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Lottery tickets, rewinding and stability: the experiments of "Stabilizing the Lottery Ticket Hypothesis".
#[derive(Debug, Parser)]
// The last occurrence of a flag wins: a Slurm job runs its command line with `--executor local` added.
#[command(name = "lt", version, propagate_version = true, args_override_self = true)]
struct Cli {
    /// Folder of datasets searched first (also LT_DATA_DIR); fetched datasets go here when given.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Datasets: list, inspect, verify, download, pack.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Train a network with one of the paper's presets (and overrides).
    Train(train::TrainArgs),
    /// Find lottery tickets: iterative magnitude pruning with rewinding to iteration k.
    Lottery(lottery::LotteryArgs),
    /// Branch off a lottery run: random-prune, reinit, reset, snip or retrain its subnetworks.
    Branch(lottery::BranchArgs),
    /// Stability of a level's subnetwork to data order or to pruning, with a random control;
    /// linear interpolation between copies.
    Stability(lottery::StabilityArgs),
    /// The jobs a lottery run needs and which are done.
    Plan(lottery::PlanArgs),
    /// One pruning step on a checkpoint: magnitude, SNIP or a plugin; writes a new mask.
    Prune(prune::PruneArgs),
    /// Masks: inspect.
    #[command(subcommand)]
    Mask(prune::MaskCommand),
    /// Pruning plugins: list what LT_PLUGIN_PATH holds.
    #[command(subcommand)]
    Plugins(prune::PluginsCommand),
    /// The runs of an experiment store: list, show, export.
    #[command(subcommand)]
    Runs(lottery::RunsCommand),
}

/// Prints a line above a progress bar, or plainly when the bar is hidden (output is not a terminal),
/// where indicatif would drop it.
pub(crate) fn say(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

fn main() -> ExitCode {
    lt_kernels::keep_freed_buffers();
    // SIGTERM (a scheduler's time limit, preemption, `scancel`) stops training at the next step
    // with its checkpoint written; the exit code says "run me again".
    lt_train::stop_on_sigterm();
    let cli = Cli::parse();
    let locations = lt_data::Locations::from_env(cli.data_dir.clone());
    let result = match cli.command {
        Command::Data(cmd) => data::run(cmd, &locations),
        Command::Train(args) => train::run(args, &locations),
        Command::Lottery(args) => lottery::lottery(args, &locations),
        Command::Branch(args) => lottery::branch(args, &locations),
        Command::Stability(args) => lottery::stability(args, &locations),
        Command::Plan(args) => lottery::plan(args, &locations),
        Command::Runs(cmd) => lottery::runs(cmd),
        Command::Prune(args) => prune::prune(args, &locations),
        Command::Mask(cmd) => prune::mask(cmd),
        Command::Plugins(cmd) => prune::plugins(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            if lt_train::stop_requested() {
                return ExitCode::from(lt_slurm::INTERRUPTED);
            }
            ExitCode::from(2)
        }
    }
}
