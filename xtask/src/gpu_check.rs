//! `cargo xtask gpu-check`: whether this project trains correctly, and how fast, on an NVIDIA GPU,
//! in one command that fits a few minutes of borrowed GPU time. It
//!
//! 1. installs the CUDA toolkit from PyPI wheels (`xtask/cuda/toolkit.sh --runtime`: nvcc, cuBLAS,
//!    cuRAND, NVRTC; nothing system-wide) and builds `lt` and `xtask` with `--features cuda` into
//!    `target/cuda`;
//! 2. runs lt-train's PyTorch step fixtures (LeNet/Adam, ResNet-20 and VGG-19 with SGD) on the GPU,
//!    against the float64 references and bounds the CPU tests use (`LT_TEST_DEVICE`);
//! 3. trains the same short lottery run (LeNet on the bundled Fashion-MNIST sample, two pruning
//!    levels) on the GPU and on the CPU and compares their accuracies level by level;
//! 4. times training steps and evaluation against PyTorch on the same GPU (`bench train --device`;
//!    the PyTorch reference from `xtask/torch/setup.sh`, whose default wheel has CUDA; `--no-torch`
//!    skips it);
//!
//! and prints one JSON summary (also written to `target/gpu-check.json`). It exits non-zero when a
//! check fails. Without a GPU it gets as far as the build and says what failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const USAGE: &str = "usage: cargo xtask gpu-check [--device cuda:N] [--no-torch] [--steps N]

Builds lt with --features cuda (CUDA toolkit from PyPI wheels: xtask/cuda/toolkit.sh), runs the
PyTorch step fixtures of LeNet, ResNet-20 and VGG-19 on the GPU, trains a short LeNet lottery run on
the GPU and on the CPU and compares their accuracies, times training steps against PyTorch on the
same GPU (--no-torch: ours only; --steps: steps per timing, default 10), and prints one JSON
summary (also in target/gpu-check.json). Meant to take about 8 minutes on one modern GPU, the build
included.";

/// Largest difference of test accuracy (points) between the GPU's and the CPU's lottery run at any
/// level: both train the same network from the same weights and data order; only the rounding of
/// sums differs, which over 500 Adam steps moves LeNet's accuracy on 500 test images by well under this.
const ACCURACY_POINTS: f64 = 2.0;

fn repo() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// The environment `xtask/cuda/toolkit.sh --runtime` prints, applied to this one's.
fn toolkit_env() -> Result<BTreeMap<String, String>> {
    let script = repo().join("xtask/cuda/toolkit.sh");
    let out = Command::new("bash")
        .args(["-c", "set -e; eval \"$(\"$0\" --runtime)\"; env -0"])
        .arg(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect())
}

/// Runs `cmd` with the toolkit's environment; its output, and the seconds it took.
fn run(mut cmd: Command, env: &BTreeMap<String, String>, what: &str) -> Result<(Output, f64)> {
    let started = Instant::now();
    eprintln!("gpu-check: {what} ...");
    let out = cmd.envs(env).current_dir(repo()).output().with_context(|| format!("{what}: starting {cmd:?}"))?;
    Ok((out, started.elapsed().as_secs_f64()))
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Test accuracy by pruning level of the one lottery run in `store` (`lt runs export`).
fn accuracies(lt: &Path, store: &Path, env: &BTreeMap<String, String>) -> Result<Vec<f64>> {
    let mut cmd = Command::new(lt);
    cmd.args(["runs", "export", "--format", "json", "--out"]).arg(store);
    let (out, _) = run(cmd, env, "reading the lottery run's accuracies")?;
    if !out.status.success() {
        bail!("lt runs export: {}", tail(&out.stderr, 5));
    }
    let mut by_level = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let row: Value = serde_json::from_str(line).context("lt runs export printed a line that is not JSON")?;
        if row["branch"] == "lottery" {
            let level = row["level"].as_u64().context("a row without a level")?;
            by_level.insert(level, row["accuracy"].as_f64().context("a row without an accuracy")?);
        }
    }
    Ok(by_level.into_values().collect())
}

pub fn run_check(args: &[String]) -> Result<()> {
    let (mut device, mut torch, mut steps) = ("cuda:0".to_string(), true, 10usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--device" => device = it.next().context("--device needs a value")?.clone(),
            "--no-torch" => torch = false,
            "--steps" => steps = it.next().context("--steps needs a value")?.parse()?,
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    let spec: lt_train::DeviceSpec = device.parse()?;
    let lt_train::DeviceSpec::Cuda(ordinal) = spec else {
        bail!("--device {device}: gpu-check checks a CUDA device (cuda or cuda:N)");
    };
    let started = Instant::now();
    let mut summary = serde_json::Map::new();
    summary.insert("device".into(), json!(spec.to_string()));
    let gpu = Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader", &format!("--id={ordinal}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    summary.insert("gpu".into(), json!(gpu));
    let mut failures: Vec<String> = Vec::new();
    let result = checks(&spec.to_string(), torch, steps, &mut summary, &mut failures);
    if let Err(e) = &result {
        failures.push(format!("{e:#}"));
    }
    summary.insert("passed".into(), json!(failures.is_empty()));
    summary.insert("failures".into(), json!(failures));
    summary.insert("wall_s".into(), json!(started.elapsed().as_secs_f64().round()));
    let text = serde_json::to_string_pretty(&Value::Object(summary))?;
    let file = repo().join("target/gpu-check.json");
    std::fs::write(&file, format!("{text}\n")).with_context(|| format!("writing {}", file.display()))?;
    println!("{text}");
    if failures.is_empty() { Ok(()) } else { bail!("gpu-check failed (summary in {})", file.display()) }
}

fn checks(
    device: &str,
    torch: bool,
    steps: usize,
    summary: &mut serde_json::Map<String, Value>,
    failures: &mut Vec<String>,
) -> Result<()> {
    let env = &toolkit_env()?;
    summary.insert("cuda_compute_cap".into(), json!(env.get("CUDA_COMPUTE_CAP")));
    let target = repo().join("target/cuda");
    // 1. The build.
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--release", "--features", "cuda", "-p", "lt-cli", "-p", "xtask", "--target-dir"]).arg(&target);
    let (out, secs) = run(cmd, env, "building lt and xtask with --features cuda")?;
    summary.insert("build_s".into(), json!(secs.round()));
    if !out.status.success() {
        bail!("cargo build --features cuda failed:\n{}", tail(&out.stderr, 30));
    }
    let lt = target.join("release/lt");
    let scratch = tempfile::tempdir().context("a scratch folder")?;
    // Can the device be used at all? One training step says, with the reason where not.
    let mut cmd = Command::new(&lt);
    cmd.arg("--data-dir").arg(repo().join("datasets"));
    cmd.args(["train", "--preset", "lenet", "--dataset", "fashion-mnist-sample", "--iters", "1it", "--device", device]);
    cmd.arg("--out").arg(scratch.path().join("probe"));
    let (out, _) = run(cmd, env, &format!("one training step on {device}"))?;
    if !out.status.success() {
        bail!("{device} cannot be used: {}", tail(&out.stderr, 3));
    }
    // 2. The PyTorch step fixtures on the GPU.
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["test", "--release", "-p", "lt-train", "--features", "lt-models/cuda", "--test", "torch_fixtures"])
        .arg("--target-dir")
        .arg(&target)
        .args(["--", "--test-threads", "1", "--nocapture"])
        .env("LT_TEST_DEVICE", device)
        .env("RUST_BACKTRACE", "0");
    let (out, secs) = run(cmd, env, "the PyTorch step fixtures on the GPU")?;
    let (stderr, stdout) = (String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    let lines: Vec<&str> = stderr.lines().chain(stdout.lines()).collect();
    // Each network's error line, each failure with the line after it (the assertion's message).
    let report: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            l.contains("worst relative error")
                || l.contains("panicked at")
                || l.starts_with("test ")
                || (*i > 0 && lines[i - 1].contains("panicked at"))
        })
        .map(|(_, l)| l.to_string())
        .collect();
    summary
        .insert("fixtures".into(), json!({"passed": out.status.success(), "seconds": secs.round(), "report": report}));
    if !out.status.success() {
        failures.push(format!("the step fixtures failed on {device} (report above)"));
    }
    // 3. A short lottery run on the GPU and on the CPU.
    let mut runs = serde_json::Map::new();
    let mut levels: Vec<Vec<f64>> = Vec::new();
    for dev in [device, "cpu"] {
        let store = scratch.path().join(dev.replace(':', "-"));
        let mut cmd = Command::new(&lt);
        cmd.arg("--data-dir").arg(repo().join("datasets"));
        cmd.args(["lottery", "--preset", "lenet", "--dataset", "fashion-mnist-sample", "--iters", "500it"]);
        cmd.args(["--levels", "2", "--device", dev, "--out"]).arg(&store);
        let (out, secs) = run(cmd, env, &format!("a LeNet lottery run (3 x 500 iterations) on {dev}"))?;
        if !out.status.success() {
            failures.push(format!("lt lottery on {dev} failed:\n{}", tail(&out.stderr, 20)));
            continue;
        }
        let acc = accuracies(&lt, &store, env)?;
        runs.insert(dev.to_string(), json!({"seconds": secs.round(), "accuracy_by_level": acc}));
        levels.push(acc);
    }
    if let [gpu, cpu] = levels.as_slice() {
        let worst = gpu.iter().zip(cpu).map(|(g, c)| 100.0 * (g - c).abs()).fold(0.0, f64::max);
        runs.insert("largest_difference_points".into(), json!(worst));
        if gpu.len() != cpu.len() || gpu.is_empty() || worst > ACCURACY_POINTS {
            failures.push(format!(
                "lottery accuracies differ: {device} {gpu:?} vs cpu {cpu:?} (allowed: {ACCURACY_POINTS} points)"
            ));
        }
    }
    summary.insert("lottery".into(), Value::Object(runs));
    // 4. Step times against PyTorch on the same GPU.
    if torch {
        crate::bench_train::torch_python(true).context("installing the PyTorch reference (--no-torch skips it)")?;
    }
    let mut cmd = Command::new(target.join("release/xtask"));
    cmd.args(["bench", "train", "--json", "--rounds", "1", "--steps", &steps.to_string(), "--device", device]);
    let (out, _) = run(cmd, env, "timing training steps")?;
    if !out.status.success() {
        failures.push(format!("bench train on {device} failed:\n{}", tail(&out.stderr, 20)));
    } else {
        let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|r| {
                json!({
                    "network": r["network"], "masked": r["masked"], "project_ms": r["project_ms"],
                    "torch_ms": r["torch_ms"], "ratio": r["ratio"], "eval_images_per_s": r["eval_images_per_s"],
                    "torch_eval_images_per_s": r["torch_eval_images_per_s"],
                })
            })
            .collect();
        summary.insert("timings".into(), json!(rows));
    }
    Ok(())
}
