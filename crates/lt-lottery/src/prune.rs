//! The pruning step of a level or branch: scores that need training machinery (SNIP's gradients)
//! and strategies that live outside the project (plugins).

use std::collections::BTreeMap;

use lt_data::Loader;
use lt_prune::{Mask, Scope};

use crate::job::{self, Context, Init};
use crate::{Error, TrainSpec};

/// Gradients of the loss at `init`'s weights (pruned weights zeroed by `mask`) for `names`, summed
/// over `batches` mini-batches of the data order `data_order_seed` from iteration `t0`.
pub fn snip_gradients(
    spec: &TrainSpec,
    data_order_seed: u64,
    ctx: &mut Context,
    init: &Init,
    mask: Option<&Mask>,
    t0: u64,
    batches: u64,
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
    let mut loader = Loader::new(ctx.data.train.clone(), data_order_seed, spec.batch_size, device)?;
    Ok(lt_train::gradients(&model, &mut loader, t0, batches, names)?)
}

/// Prunes with the plugin named by `strategy` (`plugin:NAME` or `plugin:PATH`).
pub fn plugin(
    strategy: &str,
    _weights: &BTreeMap<String, Vec<f32>>,
    _mask: &Mask,
    _scope: &Scope,
    _seed: u64,
) -> Result<Mask, Error> {
    Err(Error::Request(format!("{strategy}: pruning plugins are not supported by this build yet")))
}
