//! `lt prune`, `lt mask info` and `lt plugins list`: one pruning step on a checkpoint, masks,
//! plugins.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use candle_core::Device;
use clap::{Args, Subcommand};
use lt_data::Locations;
use lt_models::{InputSpec, Model};
use lt_prune::{Amount, Mask, MaskMeta, Plugin, Scope};
use lt_train::Checkpoint;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The checkpoint whose weights are scored (e.g. a level's final.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The current mask (default: all prunable tensors dense).
    #[arg(long)]
    mask: Option<PathBuf>,
    /// magnitude, snip, or plugin:NAME (found in LT_PLUGIN_PATH) / plugin:PATH.
    #[arg(long, default_value = "magnitude")]
    strategy: String,
    /// Prune this fraction of the surviving weights.
    #[arg(long, conflicts_with = "density")]
    fraction: Option<f64>,
    /// Prune down to this fraction of all weights.
    #[arg(long)]
    density: Option<f64>,
    /// Prune each tensor by the amount (rather than all tensors together).
    #[arg(long)]
    layerwise: bool,
    /// Also prune the output layer's weight, layer-wise at this fraction (the paper's LeNet: 0.1).
    #[arg(long)]
    output_fraction: Option<f64>,
    /// The dataset whose training batches give gradients (snip, and plugins that ask for them).
    #[arg(long)]
    dataset: Option<String>,
    /// Mini-batches of gradients (snip).
    #[arg(long, default_value_t = 1)]
    batches: u64,
    /// Batch size for gradients.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Seed passed to plugins.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Plugin parameters, as a JSON object.
    #[arg(long, default_value = "{}")]
    params: String,
    /// Where to write the new mask (never over --mask).
    #[arg(long, default_value = "mask.safetensors")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum MaskCommand {
    /// A mask's lineage and its density per tensor.
    Info {
        /// The mask file.
        mask: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// The plugins found in LT_PLUGIN_PATH (and --dir), with their descriptions and parameters.
    List {
        /// More folders to search.
        #[arg(long)]
        dir: Vec<PathBuf>,
    },
}

/// An input shape for building `model` only to learn its tensor names.
fn nominal_input(model: &str) -> InputSpec {
    if model.starts_with("mnist_") {
        InputSpec { channels: 1, height: 28, width: 28, classes: 10 }
    } else if model.starts_with("cifar_") {
        InputSpec { channels: 3, height: 32, width: 32, classes: 10 }
    } else {
        InputSpec { channels: 3, height: 299, width: 299, classes: 1000 }
    }
}

pub fn prune(args: PruneArgs, loc: &Locations) -> Result<ExitCode> {
    let amount = match (args.fraction, args.density) {
        (Some(f), None) => Amount::Fraction(f),
        (None, Some(d)) => Amount::Density(d),
        _ => bail!("give --fraction F (of the survivors) or --density D (of all weights)"),
    };
    if let Some(f) = args.output_fraction.filter(|f| !(*f > 0.0 && *f < 1.0)) {
        bail!("--output-fraction must be in (0, 1), got {f}");
    }
    if args.mask.as_ref().is_some_and(|m| m == &args.out) {
        bail!(
            "--out {} is the current mask: write the new mask elsewhere (the old one stays untouched)",
            args.out.display()
        );
    }
    let ckpt = Checkpoint::load(&args.checkpoint, &Device::Cpu)
        .with_context(|| format!("reading checkpoint {}", args.checkpoint.display()))?;
    let model_name = ckpt.meta.model.clone();
    // Built once, for its tensor names only (shapes come from the checkpoint).
    let named = Model::new(&model_name, nominal_input(&model_name), 0, Default::default(), &Device::Cpu)?;
    let (mask, parent_level) = match &args.mask {
        Some(path) => {
            let (mask, meta) = Mask::load(path)?;
            if meta.model != model_name {
                bail!("mask {} is for {}, the checkpoint is of {model_name}", path.display(), meta.model);
            }
            (mask, meta.level)
        }
        None => {
            let mut names = named.prunable();
            if args.output_fraction.is_some() {
                names.extend(named.output_layer().iter().filter(|n| n.ends_with("weight")).cloned());
            }
            let shapes: Vec<(String, Vec<usize>)> = names
                .iter()
                .map(|n| {
                    let t = ckpt.model.get(n).with_context(|| format!("checkpoint lacks prunable tensor {n}"))?;
                    Ok((n.clone(), t.dims().to_vec()))
                })
                .collect::<Result<_>>()?;
            (Mask::dense(shapes.iter().map(|(n, s)| (n.as_str(), s.as_slice()))), 0)
        }
    };
    let names: Vec<String> = mask.names().map(String::from).collect();
    let mut weights = BTreeMap::new();
    for name in &names {
        let t = ckpt.model.get(name).with_context(|| format!("checkpoint lacks tensor {name} of the mask"))?;
        weights.insert(name.clone(), t.flatten_all()?.to_vec1::<f32>()?);
    }
    let output: Vec<&String> =
        names.iter().filter(|n| args.output_fraction.is_some() && named.output_layer().contains(n)).collect();
    let scope = if args.layerwise || args.output_fraction.is_some() {
        let per_tensor =
            output.iter().map(|n| ((*n).clone(), Amount::Fraction(args.output_fraction.unwrap_or(0.1)))).collect();
        Scope::LayerWise { default: amount, per_tensor }
    } else {
        Scope::Global(amount)
    };
    let gradients = |needed: bool| -> Result<Option<BTreeMap<String, Vec<f32>>>> {
        if !needed {
            return Ok(None);
        }
        let dataset = args.dataset.as_deref().context("this strategy needs gradients: give --dataset NAME")?;
        let data = lt_lottery::Data::open(dataset, None, loc)?;
        let model = Model::new(&model_name, data.input, 0, Default::default(), &Device::Cpu)?;
        model.load_state(&ckpt.model).context("the checkpoint does not fit this dataset's input")?;
        for (name, var) in model.parameters() {
            if let Some(bits) = mask.as_f32(&name) {
                let m = candle_core::Tensor::from_vec(bits, var.dims(), &Device::Cpu)?;
                var.set(&(var.as_tensor() * m)?)?;
            }
        }
        let mut loader = lt_data::Loader::new(data.train.clone(), args.seed, args.batch, &Device::Cpu)?;
        Ok(Some(lt_train::gradients(&model, &mut loader, 0, args.batches, &names)?))
    };
    let new = match args.strategy.as_str() {
        "magnitude" => lt_prune::magnitude(&weights, &mask, &scope)?,
        "snip" => {
            let grads = gradients(true)?.context("gradients")?;
            lt_prune::snip(&weights, &grads, &mask, &scope)?
        }
        s if s.starts_with("plugin:") => {
            let plugin = Plugin::find(&s["plugin:".len()..], &lt_prune::plugin::search_path())?;
            println!("plugin {} from {}", plugin.name(), plugin.path().display());
            let grads = gradients(plugin.needs_gradients())?;
            plugin.prune(&weights, grads.as_ref(), &mask, &scope, args.seed, &args.params)?
        }
        other => bail!("unknown strategy {other:?}: magnitude, snip, or plugin:NAME / plugin:PATH"),
    };
    let meta = MaskMeta {
        model: model_name,
        level: parent_level + 1,
        strategy: args.strategy.clone(),
        parent: Some(mask.hash()),
    };
    new.save(&args.out, &meta)?;
    let mut out = std::io::stdout();
    writeln!(out, "{:<40} {:>12} {:>10} {:>10}", "tensor", "weights", "before", "after")?;
    for name in &names {
        let total = new.get(name).map_or(0, |(_, b)| b.len());
        writeln!(
            out,
            "{name:<40} {total:>12} {:>9.2}% {:>9.2}%",
            100.0 * mask.survivors_of(name) as f64 / total.max(1) as f64,
            100.0 * new.survivors_of(name) as f64 / total.max(1) as f64
        )?;
    }
    writeln!(
        out,
        "{:<40} {:>12} {:>9.2}% {:>9.2}%",
        "all",
        new.total(),
        100.0 * mask.density(),
        100.0 * new.density()
    )?;
    writeln!(out, "wrote {}", args.out.display())?;
    Ok(ExitCode::SUCCESS)
}

pub fn mask(cmd: MaskCommand) -> Result<ExitCode> {
    let MaskCommand::Info { mask } = cmd;
    let (m, meta) = Mask::load(&mask)?;
    let mut out = std::io::stdout();
    writeln!(out, "{}: mask of {}, level {}, strategy {}", mask.display(), meta.model, meta.level, meta.strategy)?;
    writeln!(out, "hash {}{}", m.hash(), meta.parent.map_or(String::new(), |p| format!(", parent {p}")))?;
    writeln!(out, "{:<40} {:<18} {:>12} {:>12} {:>9}", "tensor", "shape", "weights", "survivors", "density")?;
    for (name, shape, bits) in m.iter() {
        let kept = m.survivors_of(name);
        writeln!(
            out,
            "{name:<40} {:<18} {:>12} {:>12} {:>8.2}%",
            format!("{shape:?}"),
            bits.len(),
            kept,
            100.0 * kept as f64 / bits.len().max(1) as f64
        )?;
    }
    writeln!(out, "{:<40} {:<18} {:>12} {:>12} {:>8.2}%", "all", "", m.total(), m.survivors(), 100.0 * m.density())?;
    Ok(ExitCode::SUCCESS)
}

pub fn plugins(cmd: PluginsCommand) -> Result<ExitCode> {
    let PluginsCommand::List { dir } = cmd;
    let mut dirs = lt_prune::plugin::search_path();
    dirs.extend(dir);
    let mut out = std::io::stdout();
    writeln!(out, "built-in strategies:")?;
    for (name, what) in [
        (
            "magnitude",
            "the lowest-magnitude surviving weights, global or layer-wise (IMP; `lt prune --strategy magnitude`)",
        ),
        ("snip", "the lowest |gradient x weight| on training batches (Lee et al. 2019; `lt prune --strategy snip`)"),
        ("random", "random weights with IMP's per-layer counts, the paper's control (`lt branch random-prune`)"),
    ] {
        writeln!(out, "  {name:<14} {what}")?;
    }
    let var = lt_prune::plugin::PLUGIN_PATH_VAR;
    if dirs.is_empty() {
        writeln!(out, "plugins: none searched ({var} is not set and no --dir was given; folders separated by ':')")?;
        return Ok(ExitCode::SUCCESS);
    }
    let searched = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    writeln!(out, "plugins (searched {var} and --dir: {searched}; `--strategy plugin:NAME`):")?;
    let found = Plugin::list(&dirs);
    if found.is_empty() {
        writeln!(out, "  none: no plugin libraries in those folders")?;
    }
    for (path, plugin) in found {
        match plugin {
            Ok(p) => writeln!(
                out,
                "{:<16} {}\n{:<16} parameters {}{}\n{:<16} {}",
                p.name(),
                p.description(),
                "",
                p.params_schema(),
                if p.needs_gradients() { ", needs gradients" } else { "" },
                "",
                path.display()
            )?,
            Err(e) => writeln!(out, "{:<16} not usable: {e}", "-")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
