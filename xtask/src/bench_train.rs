//! `cargo xtask bench train`: whole training steps (forward, loss, backward, optimizer step with
//! the mask) and evaluation throughput of LeNet-300-100 (batch 60, Adam), CIFAR ResNet-20 (128,
//! SGD momentum) and VGG-19 (64, SGD momentum), dense and with an 80%-sparse mask, on synthetic
//! inputs of the datasets' shapes, with `--threads` threads (default 2).
//!
//! Where the PyTorch reference is installed (`../shared/bench/setup-torch.sh`, found through
//! `$LT_TORCH_VENV` or `~/.cache/lt-bench/torch`), the same invocation runs
//! `../shared/bench/ref_torch.py` with the same networks, batches and thread count and prints the
//! ratio project/PyTorch. FLOP counts are the forward multiply-adds × 2 of conv and linear layers
//! per example, as `ref_torch.py`'s `conv_flops` counts them, × 3 for a training step.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use lt_models::{InputSpec, Model};
use lt_train::{Masks, Optimizer, OptimizerConfig};

/// fp32 peak of this project's 2-core machine: 2 cores × 32 FLOP/cycle × 2.45 GHz.
const PEAK_GFLOPS: f64 = 156.8;

struct Net {
    key: &'static str,
    model: &'static str,
    input: InputSpec,
    batch: usize,
    optimizer: OptimizerConfig,
    lr: f64,
    /// Forward FLOPs per example (ref_torch.py's conv_flops).
    flops: f64,
}

fn nets() -> Vec<Net> {
    let cifar = InputSpec { channels: 3, height: 32, width: 32, classes: 10 };
    let sgd = OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 1e-4 };
    vec![
        Net {
            key: "lenet",
            model: "mnist_lenet_300_100",
            input: InputSpec { channels: 1, height: 28, width: 28, classes: 10 },
            batch: 60,
            optimizer: OptimizerConfig::adam(),
            lr: 1.2e-3,
            flops: 532_400.0,
        },
        Net {
            key: "resnet20",
            model: "cifar_resnet_20",
            input: cifar,
            batch: 128,
            optimizer: sgd,
            lr: 0.1,
            flops: 81_626_368.0,
        },
        Net {
            key: "vgg19",
            model: "cifar_vgg_19",
            input: cifar,
            batch: 64,
            optimizer: sgd,
            lr: 0.1,
            flops: 796_272_640.0,
        },
    ]
}

/// Deterministic values in [-1, 1).
pub(crate) fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = lt_data::Rng::new(seed);
    (0..n).map(|_| rng.unit() as f32 * 2.0 - 1.0).collect()
}

struct Timing {
    step_ms: f64,
    eval_images_per_s: f64,
}

fn time_ours(net: &Net, masked: bool, steps: usize, warmup: usize) -> Result<Timing> {
    let dev = Device::Cpu;
    let model = Model::new(net.model, net.input, 0, Default::default(), &dev)?;
    let params = model.parameters();
    let mut masks = Masks::new();
    if masked {
        for (i, (name, var)) in params.iter().enumerate() {
            if name.ends_with("weight") && var.rank() > 1 {
                let keep: Vec<f32> =
                    noise(var.elem_count(), 100 + i as u64).iter().map(|v| f32::from(*v > 0.6)).collect();
                let m = Tensor::from_vec(keep, var.dims(), &dev)?;
                var.set(&(var.as_tensor() * &m)?)?;
                masks.insert(name.clone(), m);
            }
        }
    }
    let shape = (net.batch, net.input.channels, net.input.height, net.input.width);
    let x = Tensor::from_vec(noise(shape.0 * shape.1 * shape.2 * shape.3, 1), shape, &dev)?;
    let y = Tensor::from_vec((0..net.batch as u32).map(|i| i % 10).collect::<Vec<_>>(), net.batch, &dev)?;
    let mut opt = Optimizer::new(net.optimizer)?;
    let mut times = Vec::new();
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let loss = candle_nn::loss::cross_entropy(&model.forward_t(&x, true)?, &y)?;
        let grads = loss.backward()?;
        opt.step(&params, &grads, net.lr, &masks)?;
        loss.to_scalar::<f32>()?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let step_ms = times[times.len() / 2] * 1e3;
    let xe = Tensor::from_vec(noise(500 * shape.1 * shape.2 * shape.3, 2), (500, shape.1, shape.2, shape.3), &dev)?;
    model.forward_t(&xe, false)?.to_dtype(DType::F32)?;
    let t0 = Instant::now();
    for _ in 0..2 {
        model.forward_t(&xe, false)?.sum_all()?.to_scalar::<f32>()?;
    }
    Ok(Timing { step_ms, eval_images_per_s: 1000.0 / t0.elapsed().as_secs_f64() })
}

fn torch_python() -> Option<PathBuf> {
    let venv = std::env::var_os("LT_TORCH_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lt-bench/torch")))?;
    let python = venv.join("bin/python");
    python.is_file().then_some(python)
}

fn time_torch(keys: &[&str], masked: bool, threads: usize, steps: usize) -> Result<Vec<serde_json::Value>> {
    let Some(python) = torch_python() else { return Ok(Vec::new()) };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/ref_torch.py");
    let script = if script.is_file() {
        script
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/ref_torch.py")
    };
    let mut cmd = Command::new(python);
    cmd.arg(&script).args([
        "--threads",
        &threads.to_string(),
        "--steps",
        &steps.to_string(),
        "--models",
        &keys.join(","),
    ]);
    if masked {
        cmd.arg("--masked");
    }
    let out = cmd.output().context("running ref_torch.py")?;
    if !out.status.success() {
        bail!("ref_torch.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).context("ref_torch.py output"))
        .collect()
}

pub fn run(args: &[String]) -> Result<()> {
    let (mut json, mut steps, mut threads, mut models) = (false, 10usize, 2usize, None::<String>);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--steps" => steps = it.next().context("--steps needs a value")?.parse()?,
            "--threads" => threads = it.next().context("--threads needs a value")?.parse()?,
            "--models" => models = Some(it.next().context("--models needs a value")?.clone()),
            other => bail!(
                "unknown argument {other:?}; usage: cargo xtask bench train [--json] [--steps N] [--threads N] [--models lenet,resnet20,vgg19]"
            ),
        }
    }
    // Both rayon (our kernels) and candle read this before their pools start.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let nets: Vec<Net> =
        nets().into_iter().filter(|n| models.as_ref().is_none_or(|m| m.split(',').any(|k| k == n.key))).collect();
    let keys: Vec<&str> = nets.iter().map(|n| n.key).collect();
    if !json {
        println!(
            "training step (median of {steps}) and evaluation, {threads} threads; fp32 peak {PEAK_GFLOPS} GFLOP/s"
        );
        println!(
            "{:<9} {:<7} {:>10} {:>10} {:>7} {:>8} {:>6} {:>12} {:>12}",
            "network", "mask", "ours ms", "torch ms", "ratio", "GFLOP/s", "peak", "eval img/s", "torch img/s"
        );
    }
    for masked in [false, true] {
        let torch = time_torch(&keys, masked, threads, steps)?;
        for net in &nets {
            let ours = time_ours(net, masked, steps, 2)?;
            let t = torch.iter().find(|v| v["model"] == net.key);
            let torch_ms = t.and_then(|v| v["step_ms_median"].as_f64());
            let torch_eval = t.and_then(|v| v["eval_images_per_s"].as_f64());
            let gflops = 3.0 * net.flops * net.batch as f64 / (ours.step_ms / 1e3) / 1e9;
            let ratio = torch_ms.map(|t| ours.step_ms / t);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "network": net.key, "masked": masked, "threads": threads, "batch": net.batch,
                        "project_ms": ours.step_ms, "torch_ms": torch_ms, "ratio": ratio,
                        "gflops": gflops, "peak_fraction": gflops / PEAK_GFLOPS,
                        "eval_images_per_s": ours.eval_images_per_s, "torch_eval_images_per_s": torch_eval,
                    })
                );
            } else {
                let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
                println!(
                    "{:<9} {:<7} {:>10.1} {:>10} {:>7} {:>8.1} {:>5.0}% {:>12.0} {:>12}",
                    net.key,
                    if masked { "80%" } else { "dense" },
                    ours.step_ms,
                    opt(torch_ms, 1),
                    opt(ratio, 2),
                    gflops,
                    100.0 * gflops / PEAK_GFLOPS,
                    ours.eval_images_per_s,
                    opt(torch_eval, 0)
                );
            }
        }
    }
    Ok(())
}
