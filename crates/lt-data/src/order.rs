//! [`DataOrder`]: which examples form the batch at iteration t, and the randomness that augments them.
//!
//! Each epoch is a permutation of the training set drawn from `(seed, epoch)` alone, so the batch at
//! any iteration is computed directly, without replaying earlier iterations. Augmentation randomness
//! is drawn from `(seed, epoch, example)`. Two runs with the same seed therefore see bit-identical
//! batches, and a run resumed at iteration t sees exactly what an uninterrupted run would have seen.
//! This is the object the paper's stability definitions quantify over: "the same data order u" is
//! the same `DataOrder`, "a different data order u'" is another seed.

use crate::Error;
use crate::rng::{Rng, key};

const DOMAIN_PERMUTATION: u64 = 1;
const DOMAIN_AUGMENT: u64 = 2;

/// Where iteration t falls: its epoch and its position within the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Zero-based epoch.
    pub epoch: u64,
    /// Zero-based index of the batch within the epoch.
    pub batch_in_epoch: usize,
}

/// A deterministic order over a training set: per-epoch shuffles without replacement.
///
/// The last batch of an epoch is smaller when the set size is not a multiple of the batch size
/// (PyTorch's `drop_last=False`), unless `drop_last` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOrder {
    seed: u64,
    examples: usize,
    batch_size: usize,
    drop_last: bool,
}

impl DataOrder {
    /// An order over `examples` examples in batches of `batch_size`, drawn from `seed`.
    pub fn new(seed: u64, examples: usize, batch_size: usize) -> Result<Self, Error> {
        Self::with_drop_last(seed, examples, batch_size, false)
    }

    /// Like [`DataOrder::new`], choosing whether a final partial batch is dropped.
    pub fn with_drop_last(seed: u64, examples: usize, batch_size: usize, drop_last: bool) -> Result<Self, Error> {
        if examples == 0 {
            return Err(Error::Config("a data order needs at least one example".into()));
        }
        if examples > u32::MAX as usize {
            return Err(Error::Config(format!("{examples} examples is more than a data order indexes (2^32 - 1)")));
        }
        if batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if drop_last && batch_size > examples {
            return Err(Error::Config(format!(
                "batch size {batch_size} is larger than the {examples} examples, and drop_last leaves no batch"
            )));
        }
        Ok(DataOrder { seed, examples, batch_size, drop_last })
    }

    /// The seed this order was drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of examples ordered.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// The nominal batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch.
    pub fn iterations_per_epoch(&self) -> usize {
        if self.drop_last { self.examples / self.batch_size } else { self.examples.div_ceil(self.batch_size) }
    }

    /// The epoch and in-epoch batch index of iteration `t` (zero-based).
    pub fn position(&self, t: u64) -> Position {
        let per = self.iterations_per_epoch() as u64;
        Position { epoch: t / per, batch_in_epoch: (t % per) as usize }
    }

    /// The permutation of `0..examples` used in `epoch` (Fisher-Yates from `(seed, epoch)`).
    pub fn permutation(&self, epoch: u64) -> Vec<u32> {
        let mut perm: Vec<u32> = (0..self.examples as u32).collect();
        let mut rng = Rng::new(key(&[self.seed, DOMAIN_PERMUTATION, epoch]));
        for i in (1..perm.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            perm.swap(i, j);
        }
        perm
    }

    /// The range of an epoch's permutation that forms batch `batch_in_epoch`.
    pub fn batch_range(&self, batch_in_epoch: usize) -> std::ops::Range<usize> {
        let start = batch_in_epoch * self.batch_size;
        start..(start + self.batch_size).min(self.examples)
    }

    /// The example indices of the batch at iteration `t`. Computes the epoch's permutation:
    /// callers that draw many batches keep the permutation (see [`crate::Loader`]).
    pub fn batch_indices(&self, t: u64) -> Vec<u32> {
        let pos = self.position(t);
        self.permutation(pos.epoch)[self.batch_range(pos.batch_in_epoch)].to_vec()
    }

    /// The augmentation randomness of `example` in `epoch`.
    pub fn augment_rng(&self, epoch: u64, example: u32) -> Rng {
        Rng::new(key(&[self.seed, DOMAIN_AUGMENT, epoch, example as u64]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_permutation(perm: &[u32], n: usize) {
        let mut seen = vec![false; n];
        for &i in perm {
            assert!(!seen[i as usize], "example {i} twice");
            seen[i as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "an example is missing");
    }

    proptest! {
        #[test]
        fn each_epoch_covers_every_example_once(seed: u64, n in 1usize..500, b in 1usize..64, epoch in 0u64..1000) {
            let order = DataOrder::new(seed, n, b).unwrap();
            let perm = order.permutation(epoch);
            check_permutation(&perm, n);
            // and the batches of the epoch tile it exactly
            let mut all = Vec::new();
            let first = epoch * order.iterations_per_epoch() as u64;
            for t in first..first + order.iterations_per_epoch() as u64 {
                let batch = order.batch_indices(t);
                prop_assert!(!batch.is_empty() && batch.len() <= b);
                all.extend(batch);
            }
            prop_assert_eq!(all, perm);
        }

        #[test]
        fn same_seed_same_batches_restart_anywhere(seed: u64, n in 1usize..300, b in 1usize..32, t in 0u64..5000) {
            let a = DataOrder::new(seed, n, b).unwrap();
            let restarted = DataOrder::new(seed, n, b).unwrap();
            prop_assert_eq!(a.batch_indices(t), restarted.batch_indices(t));
            let pos = a.position(t);
            let ex = a.batch_indices(t)[0];
            prop_assert_eq!(a.augment_rng(pos.epoch, ex).next_u64(), restarted.augment_rng(pos.epoch, ex).next_u64());
        }

        #[test]
        fn drop_last_batches_are_full(seed: u64, n in 1usize..300, b in 1usize..32, t in 0u64..1000) {
            prop_assume!(b <= n);
            let order = DataOrder::with_drop_last(seed, n, b, true).unwrap();
            prop_assert_eq!(order.batch_indices(t).len(), b);
        }
    }

    #[test]
    fn different_seeds_differ_and_epochs_reshuffle() {
        let a = DataOrder::new(1, 1000, 10).unwrap();
        let b = DataOrder::new(2, 1000, 10).unwrap();
        assert_ne!(a.permutation(0), b.permutation(0));
        assert_ne!(a.permutation(0), a.permutation(1));
    }

    #[test]
    fn last_partial_batch_is_kept_by_default() {
        // CIFAR-10 at batch 128: 390 full batches and one of 80.
        let order = DataOrder::new(0, 50_000, 128).unwrap();
        assert_eq!(order.iterations_per_epoch(), 391);
        assert_eq!(order.batch_indices(390).len(), 80);
        assert_eq!(order.position(391), Position { epoch: 1, batch_in_epoch: 0 });
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(DataOrder::new(0, 0, 1).is_err());
        assert!(DataOrder::new(0, 10, 0).is_err());
        assert!(DataOrder::with_drop_last(0, 10, 11, true).is_err());
    }
}
