//! The `lt` command. It parses flags, wires the library crates together and prints; all the work
//! is done by the libraries (`lt-data`, ...). Errors are printed once, as a chain, with exit code 2.

mod data;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Lottery tickets, rewinding and stability: the experiments of "Stabilizing the Lottery Ticket Hypothesis".
#[derive(Debug, Parser)]
#[command(name = "lt", version, propagate_version = true)]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let locations = lt_data::Locations::from_env(cli.data_dir.clone());
    let result = match cli.command {
        Command::Data(cmd) => data::run(cmd, &locations),
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
            ExitCode::from(2)
        }
    }
}
