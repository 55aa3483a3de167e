//! `cargo xtask bench sparse`: where a sparse product beats the dense one, by density.
//!
//! For each layer shape it times a training pass (forward, backward-data, backward-weight) of
//! `lt_kernels::linear` (dense GEMM, the pruned weights multiplied as zeros) and of
//! `lt_kernels::sparse_linear` (only the kept weights), on masks keeping 100% down to 1% of the
//! weights, and prints sparse/dense time and the crossover: the highest density from which on
//! down the sparse path is faster. Shapes: LeNet-300-100's layers at batch 60 (training) and 500
//! (evaluation); and VGG-19's convolutions as the product each of them is after im2col (weights
//! K × C·9 times columns C·9 × 1,024, one 32x32 image or a group of smaller ones), which is the
//! size of the sparse-conv question without the im2col both paths share. Then whole LeNet
//! training steps at IMP densities, dense kernels against the automatic choice of
//! `Model::use_sparse_kernels`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor, Var};

use crate::bench_train::noise;

/// (name, batch, inputs, outputs).
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("lenet fc0 (train)", 60, 784, 300),
    ("lenet fc1 (train)", 60, 300, 100),
    ("lenet fc0 (eval)", 500, 784, 300),
    ("vgg19 64->64 as GEMM", 1024, 576, 64),
    ("vgg19 256->256 as GEMM", 1024, 2304, 256),
    ("vgg19 512->512 as GEMM", 512, 4608, 512),
];

const DENSITIES: &[f64] = &[1.0, 0.64, 0.5, 0.41, 0.33, 0.26, 0.21, 0.17, 0.107, 0.05, 0.02, 0.01];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: &[String]) -> Result<()> {
    let (mut reps, mut threads) = (7usize, 2usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("usage: cargo xtask bench sparse [--reps N] [--threads N]");
                return Ok(());
            }
            "--reps" => reps = it.next().context("--reps needs a value")?.parse()?,
            "--threads" => threads = it.next().context("--threads needs a value")?.parse()?,
            other => bail!("unknown argument {other:?}; usage: cargo xtask bench sparse [--reps N] [--threads N]"),
        }
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    pool.install(|| {
        table(reps.max(1))?;
        lenet_steps(reps.max(1))
    })
}

/// Whole LeNet-300-100 training steps (batch 60, Adam) with every hidden layer pruned to a
/// density, with the dense kernels and with `Model::use_sparse_kernels` (what a lottery run at
/// that IMP level uses).
fn lenet_steps(reps: usize) -> Result<()> {
    use lt_train::{Masks, Optimizer, OptimizerConfig};
    let dev = Device::Cpu;
    let input = lt_models::InputSpec { channels: 1, height: 28, width: 28, classes: 10 };
    println!(
        "LeNet-300-100 training step (batch 60, Adam), hidden layers pruned to a density; median of {} steps",
        10 * reps
    );
    println!("{:>8} {:>9} {:>10} {:>6}  sparse layers", "density", "dense ms", "sparse ms", "ratio");
    for density in [0.21, 0.107, 0.055, 0.028, 0.014] {
        let model = lt_models::Model::new("mnist_lenet_300_100", input, 0, Default::default(), &dev)?;
        let params = model.parameters();
        let mut masks = Masks::new();
        for name in model.prunable() {
            let var = &params.iter().find(|(n, _)| *n == name).context("prunable weight")?.1;
            let keys = noise(var.elem_count(), 5);
            let keep: Vec<f32> = keys.iter().map(|k| f32::from((f64::from(*k) + 1.0) / 2.0 < density)).collect();
            let m = Tensor::from_vec(keep, var.dims(), &dev)?;
            var.set(&(var.as_tensor() * &m)?)?;
            masks.insert(name, m);
        }
        let x = Tensor::from_vec(noise(60 * 784, 1), (60, 1, 28, 28), &dev)?;
        let y = Tensor::from_vec((0..60u32).map(|i| i % 10).collect::<Vec<_>>(), 60, &dev)?;
        let mut opt = Optimizer::new(OptimizerConfig::adam())?;
        let mut step = || -> Result<f64> {
            let t = Instant::now();
            let loss = candle_nn::loss::cross_entropy(&model.forward_t(&x, true)?, &y)?;
            opt.step(&params, &loss.backward()?, 1.2e-3, &masks)?;
            loss.to_scalar::<f32>()?;
            Ok(t.elapsed().as_secs_f64())
        };
        let mut time = |n: usize| -> Result<f64> { Ok(median((0..n).map(|_| step()).collect::<Result<Vec<_>>>()?)) };
        time(5)?;
        let dense = time(10 * reps)?;
        let sparse_layers = model.use_sparse_kernels(&masks)?;
        time(5)?;
        let sparse = time(10 * reps)?;
        println!(
            "{:>7.1}% {:>9.3} {:>10.3} {:>6.2}  {}",
            density * 100.0,
            dense * 1e3,
            sparse * 1e3,
            sparse / dense,
            if sparse_layers.is_empty() { "none".to_string() } else { sparse_layers.join(", ") }
        );
    }
    Ok(())
}

/// Median time of a forward and backward pass of `f`.
fn time(reps: usize, f: &dyn Fn() -> Result<Tensor>) -> Result<f64> {
    let mut times = Vec::new();
    for i in 0..reps + 1 {
        let t = Instant::now();
        std::hint::black_box(f()?.sum_all()?.backward()?);
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(median(times))
}

fn table(reps: usize) -> Result<()> {
    let dev = Device::Cpu;
    println!(
        "training pass (forward + both gradients), sparse time / dense time by density; median of {reps}, {} threads",
        rayon::current_num_threads()
    );
    print!("{:<24} {:>9}", "layer (n x in -> out)", "dense ms");
    for d in DENSITIES {
        print!(" {:>5.0}%", d * 100.0);
    }
    println!("  crossover");
    for &(name, n, i, o) in SHAPES {
        let x = Var::from_tensor(&Tensor::from_vec(noise(n * i, 1), (n, i), &dev)?)?;
        let w0 = noise(o * i, 2);
        let b = Var::from_tensor(&Tensor::from_vec(noise(o, 3), o, &dev)?)?;
        let keys = noise(o * i, 4);
        let mut ratios = Vec::new();
        let mut dense_ms = 0.0;
        for &density in DENSITIES {
            let mask: Vec<f32> = keys.iter().map(|k| f32::from((f64::from(*k) + 1.0) / 2.0 < density)).collect();
            let wv: Vec<f32> = w0.iter().zip(&mask).map(|(w, m)| w * m).collect();
            let w = Var::from_tensor(&Tensor::from_vec(wv, (o, i), &dev)?)?;
            let pattern = Arc::new(lt_kernels::Pattern::from_mask(&mask, o, i)?);
            let dense =
                time(reps, &|| Ok(lt_kernels::linear(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), true)?))?;
            let sparse = time(reps, &|| {
                Ok(lt_kernels::sparse_linear(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), true, &pattern)?)
            })?;
            if density == 1.0 {
                dense_ms = dense * 1e3;
            }
            ratios.push(sparse / dense);
        }
        // The highest density below which every measured density has the sparse path faster.
        let crossover = DENSITIES.iter().zip(&ratios).rev().take_while(|(_, r)| **r < 1.0).last().map(|(d, _)| *d);
        print!("{:<24} {:>9.2}", format!("{name} ({n}x{i}->{o})"), dense_ms);
        for r in &ratios {
            print!(" {r:>6.2}");
        }
        println!("  {}", crossover.map_or("none".to_string(), |d| format!("<= {:.0}%", d * 100.0)));
    }
    Ok(())
}
