//! The pruning step of a level or branch: scores that need training machinery (SNIP's gradients)
//! and strategies that live outside the project (plugins).

use std::collections::BTreeMap;

use lt_data::Loader;
use lt_prune::{Mask, Scope};

use crate::job::{self, Context, Init};
use crate::{Error, TrainSpec};

/// Which mini-batches a score is computed on.
#[derive(Debug, Clone, Copy)]
pub struct Batches {
    /// The data order.
    pub data_order_seed: u64,
    /// The first batch's iteration.
    pub t0: u64,
    /// How many.
    pub count: u64,
}

/// Gradients of the loss at `init`'s weights (pruned weights zeroed by `mask`) for `names`, summed
/// over `batches`.
pub fn snip_gradients(
    spec: &TrainSpec,
    ctx: &mut Context,
    init: &Init,
    mask: Option<&Mask>,
    batches: Batches,
    names: &[String],
) -> Result<BTreeMap<String, Vec<f32>>, Error> {
    let device = &ctx.exec.device;
    let model = job::load_model(spec, ctx.data, init, device)?;
    if let Some(mask) = mask {
        let masks = job::mask_tensors(mask, device)?;
        for (name, var) in model.parameters() {
            if let Some(m) = masks.get(&name) {
                var.set(&(var.as_tensor() * m)?)?;
            }
        }
    }
    let mut loader = Loader::new(ctx.data.train.clone(), batches.data_order_seed, spec.batch_size, device)?;
    Ok(lt_train::gradients(&model, &mut loader, batches.t0, batches.count, names)?)
}

/// Prunes with the plugin named by `strategy` (`plugin:NAME`, looked up in `LT_PLUGIN_PATH`, or
/// `plugin:PATH`); gradients are computed at `at` (one batch, or the spec's `snip_batches`) when
/// the plugin asks for them.
#[allow(clippy::too_many_arguments, reason = "one pruning step's inputs")]
pub fn plugin(
    strategy: &str,
    spec: &TrainSpec,
    ctx: &mut Context,
    at: &Init,
    weights: &BTreeMap<String, Vec<f32>>,
    mask: &Mask,
    scope: &Scope,
    seed: u64,
) -> Result<Mask, Error> {
    let name = strategy.strip_prefix("plugin:").unwrap_or(strategy);
    let plugin = lt_prune::Plugin::find(name, &lt_prune::plugin::search_path())?;
    let grads = if plugin.needs_gradients() {
        let names: Vec<String> = mask.names().map(String::from).collect();
        let batches = Batches { data_order_seed: spec.data_order_seed, t0: 0, count: 1 };
        Some(snip_gradients(spec, ctx, at, Some(mask), batches, &names)?)
    } else {
        None
    };
    Ok(plugin.prune(weights, grads.as_ref(), mask, scope, seed, "{}")?)
}
