//! `lt-prune` owns masks and how they are chosen: a [`Mask`] (one 0/1 array per prunable tensor,
//! saved as safetensors with its lineage), the pruning [`Amount`] (a fraction of the survivors or
//! a target density), strategies (magnitude, global or layer-wise; SNIP scores; random with the
//! reference mask's per-tensor counts), and [`validate`], the check every new mask passes:
//! same shapes, no revived weight, exactly the requested number pruned.
//!
//! It is the only crate that loads dynamic libraries: pruning plugins ([`plugin`]), whose masks
//! pass the same [`validate`] as the built-in strategies'.
//!
//! It never trains and knows no tensor library: weights, gradients and masks are plain `f32`/`u8`
//! slices keyed by tensor name. Callers (the lottery runner, `lt prune`) compute gradients and turn
//! masks into tensors.
//!
//! Tie rule: among equal scores, the weight that comes first in (tensor name, element index) order
//! is pruned first. Counts are `round(fraction × survivors)` (half away from zero), per tensor for
//! layer-wise pruning and over all tensors for global pruning.

mod error;
mod mask;
pub mod plugin;
mod strategy;

pub use error::Error;
pub use mask::{Mask, MaskMeta};
pub use plugin::Plugin;
pub use strategy::{Amount, Expected, Scope, magnitude, random_like, snip, validate};
