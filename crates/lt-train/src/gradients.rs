//! Gradients of the training loss without a training step, for scores like SNIP's |∂L/∂w · w|.

use std::collections::BTreeMap;

use lt_data::Loader;
use lt_models::Model;

use crate::Error;

/// The gradient of the mean cross-entropy, summed over the loader's batches `t0..t0 + batches`,
/// for each named tensor in `names`, as flat `f32` vectors. The model's forward pass runs in
/// training mode (as in training and in SNIP's reference code); its BatchNorm running statistics
/// are put back afterwards, so the model is unchanged.
pub fn gradients(
    model: &Model,
    loader: &mut Loader,
    t0: u64,
    batches: u64,
    names: &[String],
) -> Result<BTreeMap<String, Vec<f32>>, Error> {
    let saved = model.state()?.into_iter().collect();
    let params = model.parameters();
    let mut sums: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for t in t0..t0 + batches.max(1) {
        let batch = loader.batch(t)?;
        model.set_dropout_key(crate::trainer::dropout_key(loader.order().seed(), t));
        let logits = model.forward_t(&batch.images, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &batch.labels)?;
        let grads = loss.backward()?;
        for name in names {
            let var = params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| Error::Config(format!("{name} is not a parameter of {}", model.name())))?;
            let g: Vec<f32> = match grads.get(var.as_tensor()) {
                Some(g) => g.flatten_all()?.to_vec1()?,
                None => vec![0.0; var.elem_count()],
            };
            match sums.get_mut(name) {
                Some(sum) => sum.iter_mut().zip(&g).for_each(|(s, g)| *s += g),
                None => {
                    sums.insert(name.clone(), g);
                }
            }
        }
    }
    model.load_state(&saved)?;
    Ok(sums)
}
