//! `cargo xtask bench data`: how fast the data pipeline produces training batches, on one core.
//!
//! - CIFAR-10-format batches (128 images, pad-crop-flip augmentation, normalization) from generated
//!   files in the exact binary layout (CIFAR-10 itself is not on these machines);
//! - Fashion-MNIST batches (60 images) from the real files (Debian's `dataset-fashion-mnist`);
//! - the time to open a split of 10,000 and of 50,000 CIFAR records: mapping, not reading, so the
//!   two should be about equal.
//!
//! The target (data issue): one core makes augmented CIFAR batches at least 20x faster than a
//! training step consumes them. Until this project's engine can time its own step, the step time
//! compared against is `--step-ms` (default: PyTorch's ResNet-20 step at batch 128 on this machine,
//! 458 ms, measured with `cargo xtask bench train` on the AMD EPYC machine).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use lt_data::{CIFAR_PIXELS, Dataset, Loader, Locations, Manifest};

pub fn run(args: &[String]) -> Result<()> {
    let mut json = false;
    let mut step_ms = 458.0;
    let mut what = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("usage: cargo xtask bench data|prune [--json] [--step-ms MS]");
                return Ok(());
            }
            "--json" => json = true,
            "--step-ms" => step_ms = it.next().context("--step-ms needs a value")?.parse().context("--step-ms")?,
            "data" => what = Some("data"),
            "prune" => what = Some("prune"),
            other => bail!("unknown argument {other:?}"),
        }
    }
    match what {
        Some("data") => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
            pool.install(|| data(json, step_ms))
        }
        Some("prune") => prune(json),
        _ => bail!("usage: cargo xtask bench data|prune [--json] [--step-ms MS]"),
    }
}

/// Global magnitude pruning and SNIP of VGG-19's 20M conv weights (20% of the survivors, one
/// thread): the host's own selection time, best of 3.
fn prune(json: bool) -> Result<()> {
    use std::collections::BTreeMap;
    let input = lt_models::InputSpec { channels: 3, height: 32, width: 32, classes: 10 };
    let model = lt_models::Model::new("cifar_vgg_19", input, 0, Default::default(), &Device::Cpu)?;
    let prunable = model.prunable();
    let mut weights = BTreeMap::new();
    for (name, var) in model.parameters().into_iter().filter(|(n, _)| prunable.contains(n)) {
        weights.insert(name, var.as_tensor().flatten_all()?.to_vec1::<f32>()?);
    }
    let grads: BTreeMap<String, Vec<f32>> =
        weights.iter().map(|(n, w)| (n.clone(), w.iter().map(|v| v.sin()).collect())).collect();
    let shapes: Vec<(String, Vec<usize>)> = weights.iter().map(|(n, w)| (n.clone(), vec![w.len()])).collect();
    let mask = lt_prune::Mask::dense(shapes.iter().map(|(n, s)| (n.as_str(), s.as_slice())));
    let scope = lt_prune::Scope::Global(lt_prune::Amount::Fraction(0.2));
    let time = |f: &dyn Fn() -> Result<lt_prune::Mask, lt_prune::Error>| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            std::hint::black_box(f()?);
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let magnitude = time(&|| lt_prune::magnitude(&weights, &mask, &scope))?;
    let snip = time(&|| lt_prune::snip(&weights, &grads, &mask, &scope))?;
    let n = mask.total();
    if json {
        println!(
            "{}",
            serde_json::json!({"bench": "prune", "network": "cifar_vgg_19", "weights": n, "magnitude_s": magnitude, "snip_s": snip})
        );
    } else {
        println!("pruning cifar_vgg_19 ({n} prunable weights), 20% of survivors, global, 1 thread");
        println!(
            "  magnitude: {:.0} ms   snip (scores given): {:.0} ms   target: well under 1 s",
            magnitude * 1e3,
            snip * 1e3
        );
    }
    Ok(())
}

struct Row {
    name: &'static str,
    images_per_s: f64,
    batch: usize,
    extra: String,
}

fn data(json: bool, step_ms: f64) -> Result<()> {
    let manifest = Manifest::named("cifar10")?;
    // Two copies of the layout, with test splits of 10,000 and of 50,000 records in one file each.
    let (small, big) = (tempfile::tempdir()?, tempfile::tempdir()?);
    write_cifar(small.path(), 10_000, 10_000)?;
    write_cifar(big.path(), 1, 50_000)?;
    let at = |root: &Path| {
        let mut loc = Locations::isolated(root);
        loc.data_dir = Some(root.to_path_buf());
        loc
    };
    // Opening a split, best of 20: mapping, not reading, so independent of the record count.
    let open_us = |loc: &Locations| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = Instant::now();
            let d = Dataset::open_manifest(manifest.clone(), "test", loc)?;
            best = best.min(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(d.len());
        }
        Ok(best)
    };
    let (open_10k, open_50k) = (open_us(&at(small.path()))?, open_us(&at(big.path()))?);
    let loc = at(small.path());

    let mut rows = Vec::new();
    let cifar = Arc::new(Dataset::open_manifest(manifest, "train", &loc)?);
    let ips = throughput(cifar, 128, 200)?;
    let consumed = 128.0 / (step_ms / 1e3);
    rows.push(Row {
        name: "cifar10-format train batch (pad-crop-flip + normalize)",
        images_per_s: ips,
        batch: 128,
        extra: format!(
            "{:.0}x a {step_ms} ms training step's consumption ({consumed:.0} images/s); target >= 20x",
            ips / consumed
        ),
    });
    match Dataset::open("fashion-mnist", "train", &Locations::from_env(None)) {
        Ok(fm) => rows.push(Row {
            name: "fashion-mnist train batch (normalize)",
            images_per_s: throughput(Arc::new(fm), 60, 2000)?,
            batch: 60,
            extra: String::new(),
        }),
        Err(e) => eprintln!("fashion-mnist skipped: {e}"),
    }
    if json {
        for r in &rows {
            println!(
                "{}",
                serde_json::json!({"bench": "data", "name": r.name, "batch": r.batch, "images_per_s": r.images_per_s.round(), "threads": 1})
            );
        }
        println!(
            "{}",
            serde_json::json!({"bench": "data", "name": "open split", "open_10k_records_us": open_10k, "open_50k_records_us": open_50k})
        );
    } else {
        println!("data pipeline, 1 thread");
        for r in &rows {
            println!("  {:<58} batch {:>4}: {:>10.0} images/s  {}", r.name, r.batch, r.images_per_s, r.extra);
        }
        println!(
            "  open a CIFAR split of one file: 10,000 records {open_10k:.0} us, 50,000 records {open_50k:.0} us (mapping, not reading)"
        );
    }
    Ok(())
}

fn throughput(dataset: Arc<Dataset>, batch: usize, iters: u64) -> Result<f64> {
    let mut loader = Loader::new(dataset, 0, batch, &Device::Cpu)?;
    for t in 0..5 {
        loader.batch(t)?;
    }
    let start = Instant::now();
    for t in 5..5 + iters {
        std::hint::black_box(loader.batch(t)?);
    }
    Ok((iters as usize * batch) as f64 / start.elapsed().as_secs_f64())
}

/// Five training batch files of `per_file` records and a test file of `test` records, in the official layout.
fn write_cifar(root: &Path, per_file: usize, test: usize) -> Result<()> {
    let dir = root.join("cifar10/cifar-10-batches-bin");
    let record =
        |i: usize| -> (u8, [u8; CIFAR_PIXELS]) { ((i % 10) as u8, std::array::from_fn(|p| (p * 7 + i * 13) as u8)) };
    for n in 1..=5 {
        lt_data::write_cifar_batch(&dir.join(format!("data_batch_{n}.bin")), (0..per_file).map(record))?;
    }
    lt_data::write_cifar_batch(&dir.join("test_batch.bin"), (0..test).map(record))?;
    Ok(())
}
