//! `cargo xtask`: the project's automation, one module per subcommand.
//!
//! - `cargo xtask reproduce figN [--scale smoke|small|medium|paper] ...`: one figure of the paper (see `reproduce/`).
//! - `cargo xtask bench data [--json] [--step-ms MS]`: data-pipeline throughput (see `bench.rs`).
//! - `cargo xtask bench train [--json] [--steps N] [--threads N]`: training steps vs PyTorch (see `bench_train.rs`).
//! - `cargo xtask bench conv [--reps N] [--threads N] [--gemm]`: convolution layers one by one (see `bench_conv.rs`).
//! - `cargo xtask bench sparse [--reps N] [--threads N]`: sparse vs dense layers by density (see `bench_sparse.rs`).
//! - `cargo xtask render DIR...`: re-draws finished figures from their `data.json` (see `reproduce/`).
//! - `cargo xtask fixtures`: regenerates lt-train's PyTorch step fixtures (see `fixtures.rs`).
//! - `cargo xtask gpu-check [--device cuda:N]`: builds with CUDA and checks and times it on a GPU (see `gpu_check.rs`).
//!
//! Tidy checks of the source tree live in `tidy.rs` and run under `cargo test`.

mod bench;
mod bench_conv;
mod bench_sparse;
mod bench_train;
mod fixtures;
mod gpu_check;
mod reproduce;
#[cfg(test)]
mod tidy;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask bench data|prune|train|conv|sparse [--json] ... | cargo xtask fixtures [lenet|resnet20|vgg19...] | cargo xtask reproduce FIG ... | cargo xtask render DIR... | cargo xtask gpu-check [--device cuda:N]";

fn main() -> std::process::ExitCode {
    // `reproduce` and `bench` train: without this, a third of a step goes to page faults.
    lt_kernels::keep_freed_buffers();
    // SIGTERM (a Slurm time limit, preemption, `scancel`) stops training at the next step with its
    // checkpoint written, and exit code 75 asks the batch script to requeue the job.
    lt_train::stop_on_sigterm();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if lt_train::stop_requested() {
                return std::process::ExitCode::from(lt_slurm::INTERRUPTED);
            }
            std::process::ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let help = |a: Option<&String>| a.is_some_and(|a| a == "-h" || a == "--help");
    match args.first().map(String::as_str) {
        Some("bench") if help(args.get(1)) => {
            println!("{USAGE}");
            Ok(())
        }
        Some("fixtures") if args.iter().any(|a| help(Some(a))) => {
            println!(
                "usage: cargo xtask fixtures [lenet|resnet20|vgg19...]: remakes lt-train's PyTorch step fixtures (all when none is named)"
            );
            Ok(())
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("train") => bench_train::run(&args[2..]),
        Some("bench") if args.get(1).map(String::as_str) == Some("conv") => bench_conv::run(&args[2..]),
        Some("bench") if args.get(1).map(String::as_str) == Some("sparse") => bench_sparse::run(&args[2..]),
        Some("bench") => bench::run(&args[1..]),
        Some("fixtures") => fixtures::run(&args[1..]),
        Some("reproduce") => reproduce::run(&args[1..]),
        Some("render") if args.iter().any(|a| help(Some(a))) => {
            println!(
                "usage: cargo xtask render DIR...: re-draws figure.svg and figure.png of finished figures from their data.json"
            );
            Ok(())
        }
        Some("render") => reproduce::render(&args[1..]),
        Some("gpu-check") => gpu_check::run_check(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n{USAGE}"),
    }
}
