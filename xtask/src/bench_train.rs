//! `cargo xtask bench train`: whole training steps (forward, loss, backward, optimizer step with
//! the mask) and evaluation throughput of LeNet-300-100 (batch 60, Adam), CIFAR ResNet-20 (128,
//! SGD momentum) and VGG-19 (64, SGD momentum), dense and with an 80%-sparse mask, on synthetic
//! inputs of the datasets' shapes, with `--threads` threads (default 2).
//!
//! Where the PyTorch reference is installed (`xtask/torch/setup.sh`, which puts it in
//! `$LT_TORCH_VENV` or `target/torch-venv`), the same invocation runs `xtask/torch/bench_step.py`
//! with the same networks, batches and thread count and prints the ratio project/PyTorch. FLOP
//! counts are the forward multiply-adds × 2 of conv and linear layers per example, as
//! `nets.py`'s `forward_flops` counts them, × 3 for a training step.
//!
//! Each network is timed `--rounds` times (default 2), PyTorch and ours alternating, and each side
//! keeps its best median step and its best evaluation (itself the median of `EVAL_REPEATS`
//! timings): these machines are shared, and a slow spell that hit only one side would otherwise
//! decide the ratio.
//!
//! Peak memory: each network (and mask setting) runs in a process of its own, ours (this binary,
//! re-invoked with `--child`) and PyTorch's (`bench_step.py` for that one network), and reports its
//! peak resident set (`getrusage`'s `ru_maxrss`) after the training steps and the evaluation.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use lt_models::{InputSpec, Model};
use lt_train::DeviceSpec;
use lt_train::{Masks, Optimizer, OptimizerConfig};

/// What the benchmark ran on: the CPU, the tier of each kernel family, and the fp32 peak measured
/// on the spot with `threads` threads (a short FMA loop at the widest width the CPU has).
struct Machine {
    cpu: String,
    isa: String,
    peak_gflops: f64,
}

impl Machine {
    fn measure(threads: usize) -> Machine {
        use lt_kernels::cpu;
        let isa = cpu::kernel_tiers().iter().map(|(k, i)| format!("{k}={}", i.name())).collect::<Vec<_>>().join(",");
        // The best of three short runs: a neighbour's burst on this shared machine only lowers it.
        let peak = (0..3)
            .map(|_| cpu::measured_peak_gflops(threads, std::time::Duration::from_millis(150)))
            .fold(0.0, f64::max);
        Machine { cpu: cpu::model_name(), isa, peak_gflops: peak }
    }
}

struct Net {
    key: &'static str,
    model: &'static str,
    input: InputSpec,
    batch: usize,
    optimizer: OptimizerConfig,
    lr: f64,
    /// Forward FLOPs per example (nets.py's forward_flops).
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

/// Timings of the evaluation (2 batches of 500) per run, of which the median counts: one takes a
/// few milliseconds for LeNet, where a single timing is mostly this machine's noise. PyTorch's
/// side (`xtask/torch/bench_step.py`) does the same.
const EVAL_REPEATS: usize = 5;

fn time_ours(net: &Net, masked: bool, steps: usize, warmup: usize, dev: &Device) -> Result<Timing> {
    let model = Model::new(net.model, net.input, 0, Default::default(), dev)?;
    let params = model.parameters();
    let mut masks = Masks::new();
    if masked {
        for (i, (name, var)) in params.iter().enumerate() {
            if name.ends_with("weight") && var.rank() > 1 {
                let keep: Vec<f32> =
                    noise(var.elem_count(), 100 + i as u64).iter().map(|v| f32::from(*v > 0.6)).collect();
                let m = Tensor::from_vec(keep, var.dims(), dev)?;
                var.set(&(var.as_tensor() * &m)?)?;
                masks.insert(name.clone(), m);
            }
        }
    }
    let shape = (net.batch, net.input.channels, net.input.height, net.input.width);
    let x = Tensor::from_vec(noise(shape.0 * shape.1 * shape.2 * shape.3, 1), shape, dev)?;
    let y = Tensor::from_vec((0..net.batch as u32).map(|i| i % 10).collect::<Vec<_>>(), net.batch, dev)?;
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
    let xe = Tensor::from_vec(noise(500 * shape.1 * shape.2 * shape.3, 2), (500, shape.1, shape.2, shape.3), dev)?;
    model.forward_t(&xe, false)?.to_dtype(DType::F32)?;
    let mut evals = Vec::new();
    for _ in 0..EVAL_REPEATS {
        let t0 = Instant::now();
        for _ in 0..2 {
            model.forward_t(&xe, false)?.sum_all()?.to_scalar::<f32>()?;
        }
        evals.push(t0.elapsed().as_secs_f64());
    }
    evals.sort_by(f64::total_cmp);
    Ok(Timing { step_ms, eval_images_per_s: 1000.0 / evals[evals.len() / 2] })
}

/// `xtask/torch/`: the PyTorch reference's scripts and its set-up.
fn torch_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("torch")
}

/// The python of the PyTorch reference's venv (`$LT_TORCH_VENV`, else `target/torch-venv`). With
/// `install`, `xtask/torch/setup.sh` installs it first where it is missing; without, `None` when
/// it is not installed.
pub fn torch_python(install: bool) -> Result<Option<PathBuf>> {
    if install {
        let setup = torch_dir().join("setup.sh");
        let out = Command::new("bash").arg(&setup).output().with_context(|| format!("running {}", setup.display()))?;
        if !out.status.success() {
            bail!("{} failed: {}", setup.display(), String::from_utf8_lossy(&out.stderr));
        }
        return Ok(Some(PathBuf::from(String::from_utf8(out.stdout)?.trim())));
    }
    let venv = std::env::var_os("LT_TORCH_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/torch-venv"));
    let python = venv.join("bin/python");
    Ok(python.is_file().then_some(python))
}

/// PyTorch's timings of one network, and the peak resident set of the process that ran them.
fn time_torch(
    key: &str,
    masked: bool,
    threads: usize,
    steps: usize,
    device: DeviceSpec,
) -> Result<Option<serde_json::Value>> {
    let Some(python) = torch_python(false)? else { return Ok(None) };
    let script = torch_dir().join("bench_step.py");
    let mut argv = vec![
        script.display().to_string(),
        "--threads".into(),
        threads.to_string(),
        "--steps".into(),
        steps.to_string(),
        "--models".into(),
        key.into(),
        "--device".into(),
        device.to_string(),
    ];
    if masked {
        argv.push("--masked".into());
    }
    // The script as it is, run by a wrapper that prints the process's peak RSS when it is done.
    let wrapper = "import json, resource, runpy, sys\n\
                   sys.argv = json.loads(sys.argv[1])\n\
                   runpy.run_path(sys.argv[0], run_name='__main__')\n\
                   print(json.dumps({'peak_rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))";
    let out = Command::new(python)
        .args(["-c", wrapper, &serde_json::to_string(&argv)?])
        .output()
        .context("running bench_step.py")?;
    if !out.status.success() {
        bail!("bench_step.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).context("bench_step.py output"))
        .collect::<Result<_>>()?;
    let mut result = lines.iter().find(|v| v["model"] == key).cloned().context("bench_step.py printed no result")?;
    result["peak_rss_kb"] = lines.iter().find_map(|v| v.get("peak_rss_kb").cloned()).unwrap_or_default();
    Ok(Some(result))
}

/// This process's peak resident set, in KiB.
fn peak_rss_kb() -> u64 {
    // SAFETY: getrusage writes one `rusage` struct, which lives on this stack frame.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
}

/// Our timings of one network in a fresh process (so that its peak memory is its own).
fn time_ours_in_child(
    net: &Net,
    masked: bool,
    threads: usize,
    steps: usize,
    device: DeviceSpec,
) -> Result<(Timing, u64)> {
    let mut cmd = Command::new(std::env::current_exe().context("locating the xtask binary")?);
    cmd.args(["bench", "train", "--child", net.key, "--threads", &threads.to_string(), "--steps", &steps.to_string()]);
    cmd.args(["--device", &device.to_string()]);
    if masked {
        cmd.arg("--masked");
    }
    let out = cmd.output().context("running the benchmark child")?;
    if !out.status.success() {
        bail!("benchmark of {} failed: {}", net.key, String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .with_context(|| format!("benchmark child printed {stdout:?}"))?;
    let get = |k: &str| v[k].as_f64().with_context(|| format!("benchmark child: no {k}"));
    Ok((Timing { step_ms: get("step_ms")?, eval_images_per_s: get("eval_images_per_s")? }, get("peak_rss_kb")? as u64))
}

pub fn run(args: &[String]) -> Result<()> {
    let (mut json, mut steps, mut threads, mut models) = (false, 10usize, 2usize, None::<String>);
    let (mut child, mut masked, mut rounds, mut device) = (None::<String>, false, 2usize, DeviceSpec::Cpu);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask bench train [--json] [--steps N] [--rounds N] [--threads N] [--models lenet,resnet20,vgg19] [--device cpu|cuda[:N]]"
                );
                return Ok(());
            }
            "--json" => json = true,
            "--steps" => steps = it.next().context("--steps needs a value")?.parse()?,
            "--threads" => threads = it.next().context("--threads needs a value")?.parse()?,
            "--models" => models = Some(it.next().context("--models needs a value")?.clone()),
            "--rounds" => rounds = it.next().context("--rounds needs a value")?.parse()?,
            "--device" => device = it.next().context("--device needs a value")?.parse()?,
            // Internal: time one network in this process and print the result as JSON.
            "--child" => child = Some(it.next().context("--child needs a network")?.clone()),
            "--masked" => masked = true,
            other => bail!(
                "unknown argument {other:?}; usage: cargo xtask bench train [--json] [--steps N] [--rounds N] [--threads N] [--models lenet,resnet20,vgg19] [--device cpu|cuda[:N]]"
            ),
        }
    }
    // Both rayon (our kernels) and candle read this before their pools start.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    if let Some(key) = child {
        let net = nets().into_iter().find(|n| n.key == key).with_context(|| format!("no network {key:?}"))?;
        let t = time_ours(&net, masked, steps, 2, &device.open()?)?;
        println!(
            "{}",
            serde_json::json!({"step_ms": t.step_ms, "eval_images_per_s": t.eval_images_per_s, "peak_rss_kb": peak_rss_kb()})
        );
        return Ok(());
    }
    let nets: Vec<Net> =
        nets().into_iter().filter(|n| models.as_ref().is_none_or(|m| m.split(',').any(|k| k == n.key))).collect();
    let machine = Machine::measure(threads);
    if !json {
        println!(
            "cpu: {}; kernels: {}; fp32 peak measured now: {:.0} GFLOP/s ({threads} threads)",
            machine.cpu, machine.isa, machine.peak_gflops
        );
        if device.is_cuda() {
            println!("device: {device} (ours: candle's CUDA backend; the peak column is the CPU's, ignore it)");
        }
        println!(
            "training step (best of {rounds} alternating rounds, each the median of {steps} steps) and evaluation, {threads} threads; peak memory: resident set of a process per network"
        );
        println!(
            "{:<9} {:<7} {:>9} {:>9} {:>6} {:>8} {:>5} {:>10} {:>10} {:>8} {:>8}",
            "network",
            "mask",
            "ours ms",
            "torch ms",
            "ratio",
            "GFLOP/s",
            "peak",
            "eval img/s",
            "torch img/s",
            "ours MiB",
            "torch MiB"
        );
    }
    if torch_python(false)?.is_none() {
        eprintln!("note: the PyTorch reference is not installed (xtask/torch/setup.sh installs it): ours only");
    }
    for masked in [false, true] {
        for net in &nets {
            // The two alternate, `rounds` times each, and each keeps its best median: a slow
            // spell of this shared machine then hits both or neither.
            // The evaluation likewise: each side's best over the rounds.
            let (mut torch, mut ours, mut ours_kb) = (None::<serde_json::Value>, None::<Timing>, 0u64);
            let (mut torch_eval, mut ours_eval) = (None::<f64>, 0f64);
            for _ in 0..rounds.max(1) {
                if let Some(t) = time_torch(net.key, masked, threads, steps, device)? {
                    let faster =
                        |old: &serde_json::Value| t["step_ms_median"].as_f64() < old["step_ms_median"].as_f64();
                    if let Some(e) = t["eval_images_per_s"].as_f64() {
                        torch_eval = Some(torch_eval.map_or(e, |b: f64| b.max(e)));
                    }
                    if torch.as_ref().is_none_or(faster) {
                        torch = Some(t);
                    }
                }
                let (t, kb) = time_ours_in_child(net, masked, threads, steps, device)?;
                ours_kb = ours_kb.max(kb);
                ours_eval = ours_eval.max(t.eval_images_per_s);
                if ours.as_ref().is_none_or(|o| t.step_ms < o.step_ms) {
                    ours = Some(t);
                }
            }
            let mut ours = ours.context("no timing")?;
            ours.eval_images_per_s = ours_eval;
            let torch_ms = torch.as_ref().and_then(|v| v["step_ms_median"].as_f64());
            let torch_kb = torch.as_ref().and_then(|v| v["peak_rss_kb"].as_f64());
            let gflops = 3.0 * net.flops * net.batch as f64 / (ours.step_ms / 1e3) / 1e9;
            let ratio = torch_ms.map(|t| ours.step_ms / t);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "network": net.key, "masked": masked, "threads": threads, "batch": net.batch,
                        "project_ms": ours.step_ms, "torch_ms": torch_ms, "ratio": ratio,
                        // The CPU's peak says nothing of a GPU's.
                        "gflops": gflops, "peak_fraction": (!device.is_cuda()).then(|| gflops / machine.peak_gflops),
                        "cpu": machine.cpu, "isa": machine.isa, "peak_gflops": machine.peak_gflops,
                        "device": device.to_string(),
                        "eval_images_per_s": ours.eval_images_per_s, "torch_eval_images_per_s": torch_eval,
                        "project_peak_rss_kb": ours_kb, "torch_peak_rss_kb": torch_kb,
                    })
                );
            } else {
                let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
                println!(
                    "{:<9} {:<7} {:>9.1} {:>9} {:>6} {:>8.1} {:>4.0}% {:>10.0} {:>10} {:>8.0} {:>8}",
                    net.key,
                    if masked { "80%" } else { "dense" },
                    ours.step_ms,
                    opt(torch_ms, 1),
                    opt(ratio, 2),
                    gflops,
                    100.0 * gflops / machine.peak_gflops,
                    ours.eval_images_per_s,
                    opt(torch_eval, 0),
                    ours_kb as f64 / 1024.0,
                    opt(torch_kb.map(|k| k / 1024.0), 0)
                );
            }
        }
    }
    Ok(())
}
