//! `cargo xtask bench conv`: `lt_kernels::conv2d` layer by layer, at the shapes and batch sizes of
//! CIFAR ResNet-20 (128) and VGG-19 (64): forward, backward-weight and backward-data, each
//! with its GFLOP/s and, weighted by how often the shape occurs in the network, its share of the
//! network's convolution time. This is where a training step's time goes (the convolutions are
//! 80-90% of it), so it is the table to read before and after changing `lt-kernels/src/conv.rs`.

use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::bench_train::noise;
use candle_core::{Device, Tensor, Var};

/// One convolution shape: network, batch, input channels, output channels, input side, kernel,
/// stride, padding, how many layers of the network have it.
type Shape = (&'static str, usize, usize, usize, usize, usize, usize, usize, usize);

const SHAPES: &[Shape] = &[
    ("resnet20", 128, 3, 16, 32, 3, 1, 1, 1),
    ("resnet20", 128, 16, 16, 32, 3, 1, 1, 6),
    ("resnet20", 128, 16, 32, 32, 3, 2, 1, 1),
    ("resnet20", 128, 16, 32, 32, 1, 2, 0, 1),
    ("resnet20", 128, 32, 32, 16, 3, 1, 1, 5),
    ("resnet20", 128, 32, 64, 16, 3, 2, 1, 1),
    ("resnet20", 128, 32, 64, 16, 1, 2, 0, 1),
    ("resnet20", 128, 64, 64, 8, 3, 1, 1, 5),
    ("vgg19", 64, 3, 64, 32, 3, 1, 1, 1),
    ("vgg19", 64, 64, 64, 32, 3, 1, 1, 1),
    ("vgg19", 64, 64, 128, 16, 3, 1, 1, 1),
    ("vgg19", 64, 128, 128, 16, 3, 1, 1, 1),
    ("vgg19", 64, 128, 256, 8, 3, 1, 1, 1),
    ("vgg19", 64, 256, 256, 8, 3, 1, 1, 3),
    ("vgg19", 64, 256, 512, 4, 3, 1, 1, 1),
    ("vgg19", 64, 512, 512, 4, 3, 1, 1, 3),
    ("vgg19", 64, 512, 512, 2, 3, 1, 1, 4),
];

/// A pass's time (s) in ms; "-" where the difference of two medians it comes from was not
/// positive (the machine's noise larger than the pass).
fn ms(t: f64) -> String {
    if t > 1e-9 { format!("{:.2}", t * 1e3) } else { "-".into() }
}

/// GFLOP/s of `flops` in `t` seconds, "-" where `t` is not measured (see [`ms`]).
fn gflops(flops: f64, t: f64) -> String {
    if t > 1e-9 { format!("{:.1}", flops / t / 1e9) } else { "-".into() }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: &[String]) -> Result<()> {
    let (mut reps, mut threads, mut only, mut gemm) = (5usize, 2usize, None::<String>, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("usage: cargo xtask bench conv [--reps N] [--threads N] [--models resnet20,vgg19] [--gemm]");
                return Ok(());
            }
            "--reps" => reps = it.next().context("--reps needs a value")?.parse()?,
            "--threads" => threads = it.next().context("--threads needs a value")?.parse()?,
            "--models" => only = Some(it.next().context("--models needs a value")?.clone()),
            "--gemm" => gemm = true,
            other => bail!(
                "unknown argument {other:?}; usage: cargo xtask bench conv [--reps N] [--threads N] [--models resnet20,vgg19] [--gemm]"
            ),
        }
    }
    if gemm {
        gemm_table();
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    pool.install(|| table(reps.max(1), only.as_deref()))
}

/// `--gemm`: the matrix products alone at the convolutions' shapes (forward of a 16-channel
/// 32x32 layer, its weight gradient with the inner dimension contiguous in both operands, then
/// VGG-19's wider products), one thread and two at once: how far the convolutions' own work
/// (im2col, packing, copies) keeps them from the GEMM's rate.
fn gemm_table() {
    let peak = lt_kernels::cpu::measured_peak_gflops(1, std::time::Duration::from_millis(200));
    println!("matrix products alone, best of 20; one thread's measured peak: {peak:.1} GFLOP/s");
    println!("{:>5} {:>5} {:>5} {:>4} {:>12} {:>16}", "m", "n", "k", "Bᵀ", "1 thread GF", "2 threads GF");
    for (m, n, k, t) in [
        (16, 1024, 144, false),
        (16, 144, 1024, true),
        (64, 512, 576, false),
        (128, 512, 1152, false),
        (512, 512, 4608, false),
    ] {
        let one = lt_kernels::cpu::matmul_gflops(m, n, k, t, 20);
        let both: f64 = std::thread::scope(|s| {
            let h: Vec<_> = (0..2).map(|_| s.spawn(move || lt_kernels::cpu::matmul_gflops(m, n, k, t, 20))).collect();
            h.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
        });
        println!("{m:>5} {n:>5} {k:>5} {:>4} {one:>12.1} {both:>16.1}", if t { "yes" } else { "" });
    }
}

fn table(reps: usize, only: Option<&str>) -> Result<()> {
    let dev = Device::Cpu;
    println!("conv2d layer by layer, median of {reps}, {} threads", rayon::current_num_threads());
    println!(
        "{:<9} {:>4} {:>4} {:>4} {:>3} {:>4} {:>2} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6}",
        "network", "C", "K", "H", "RxS", "str", "×", "fwd ms", "dw ms", "dx ms", "fwd GF", "dw GF", "dx GF", "share"
    );
    let mut rows = Vec::new();
    for &(net, n, c, k, h, r, stride, pad, count) in SHAPES {
        if only.is_some_and(|o| !o.split(',').any(|m| m == net)) {
            continue;
        }
        let x = Var::from_tensor(&Tensor::from_vec(noise(n * c * h * h, 1), (n, c, h, h), &dev)?)?;
        let w = Var::from_tensor(&Tensor::from_vec(noise(k * c * r * r, 2), (k, c, r, r), &dev)?)?;
        let p = (h + 2 * pad - r) / stride + 1;
        let probe = Tensor::from_vec(noise(n * k * p * p, 3), (n, k, p, p), &dev)?;
        // Three timings: forward; forward + dw (the input is a plain tensor, as for a network's
        // first layer); forward + dw + dx.
        let (mut fwd, mut weight, mut both) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..reps + 1 {
            for (input, times) in [(x.as_tensor().detach(), &mut weight), (x.as_tensor().clone(), &mut both)] {
                let t = Instant::now();
                let y = lt_kernels::conv2d(&input, w.as_tensor(), stride, pad)?;
                let tf = t.elapsed().as_secs_f64();
                std::hint::black_box((y * &probe)?.sum_all()?.backward()?);
                if i > 0 {
                    fwd.push(tf);
                    times.push(t.elapsed().as_secs_f64());
                }
            }
        }
        // The probe's own cost (a product, a sum and their backward over the output), timed on a
        // variable of the output's shape and taken off the backward timings.
        let out = Var::from_tensor(&Tensor::from_vec(noise(n * k * p * p, 4), (n, k, p, p), &dev)?)?;
        let mut probe_times = Vec::new();
        for i in 0..reps + 1 {
            let t = Instant::now();
            std::hint::black_box((out.as_tensor() * &probe)?.sum_all()?.backward()?);
            if i > 0 {
                probe_times.push(t.elapsed().as_secs_f64());
            }
        }
        let f = median(fwd);
        let dw = (median(weight.clone()) - f - median(probe_times)).max(1e-9);
        let dx = (median(both) - median(weight.clone())).max(1e-9);
        let flops = 2.0 * (n * k * c * r * r * p * p) as f64;
        rows.push((net, c, k, h, r, stride, count, f, dw, dx, flops));
    }
    for net in ["resnet20", "vgg19"] {
        let total: f64 = rows.iter().filter(|r| r.0 == net).map(|r| r.6 as f64 * (r.7 + r.8 + r.9)).sum();
        for &(name, c, k, h, r, stride, count, f, dw, dx, flops) in rows.iter().filter(|r| r.0 == net) {
            println!(
                "{name:<9} {c:>4} {k:>4} {h:>4} {:>3} {stride:>4} {count:>2} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>5.1}%",
                format!("{r}x{r}"),
                ms(f),
                ms(dw),
                ms(dx),
                gflops(flops, f),
                gflops(flops, dw),
                gflops(flops, dx),
                100.0 * count as f64 * (f + dw + dx) / total
            );
        }
        if total > 0.0 {
            println!("{net:<9} all convolutions of one step: {:.1} ms", total * 1e3);
        }
    }
    Ok(())
}
