//! [`Loader`]: training batches by iteration number, from a [`DataOrder`] and a transform.

use std::sync::Arc;

use candle_core::Device;

use crate::Error;
use crate::augment::Transform;
use crate::dataset::{Batch, Dataset};
use crate::order::DataOrder;

/// Produces the training batch of any iteration t. Keeps the current epoch's permutation, so
/// drawing consecutive iterations costs one shuffle per epoch; jumping to any t costs one shuffle.
#[derive(Debug)]
pub struct Loader {
    dataset: Arc<Dataset>,
    order: DataOrder,
    transform: Transform,
    device: Device,
    epoch: Option<(u64, Vec<u32>)>,
}

impl Loader {
    /// A loader over `dataset` in batches of `batch_size`, drawn from `seed`, with the split's
    /// training transform.
    pub fn new(dataset: Arc<Dataset>, seed: u64, batch_size: usize, device: &Device) -> Result<Self, Error> {
        let order = DataOrder::new(seed, dataset.len(), batch_size)?;
        let transform = dataset.train_transform()?;
        Ok(Self::with_order(dataset, order, transform, device))
    }

    /// A loader with an explicit order and transform.
    pub fn with_order(dataset: Arc<Dataset>, order: DataOrder, transform: Transform, device: &Device) -> Self {
        Loader { dataset, order, transform, device: device.clone(), epoch: None }
    }

    /// The data order.
    pub fn order(&self) -> &DataOrder {
        &self.order
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// The batch of iteration `t` (zero-based).
    pub fn batch(&mut self, t: u64) -> Result<Batch, Error> {
        let pos = self.order.position(t);
        if self.epoch.as_ref().is_none_or(|(e, _)| *e != pos.epoch) {
            self.epoch = Some((pos.epoch, self.order.permutation(pos.epoch)));
        }
        let perm = self.epoch.as_ref().map(|(_, p)| p.as_slice()).unwrap_or_default();
        let indices = &perm[self.order.batch_range(pos.batch_in_epoch)];
        let order = self.order;
        self.dataset.batch(indices, &self.transform, |i| order.augment_rng(pos.epoch, i), &self.device)
    }
}
