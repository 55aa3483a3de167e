//! `lt-data` owns everything between dataset files on disk and batches of tensors: the dataset
//! registry (`datasets/*.toml`, embedded), finding a dataset on this machine, fetching and verifying
//! it, reading the official formats in place through memory maps (IDX for MNIST and Fashion-MNIST,
//! CIFAR-10 binary batches, and ImageNet packed into shards by [`pack_imagenet`]), a generated
//! miniature ImageNet for pipeline checks ([`miniature`]), augmentation, and the deterministic
//! [`DataOrder`] that the paper's stability experiments hold fixed or vary.
//!
//! It does not own models, training, or anything printed: progress comes back through callbacks,
//! and the `lt` binary renders it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use lt_data::{Dataset, Loader, Locations};
//!
//! # fn main() -> Result<(), lt_data::Error> {
//! let locations = Locations::from_env(None);
//! let train = Arc::new(Dataset::open("fashion-mnist", "train", &locations)?);
//! let mut loader = Loader::new(train, /* data-order seed */ 7, /* batch */ 60, &candle_core::Device::Cpu)?;
//! let batch = loader.batch(1234)?; // iteration 1234, without replaying 0..1234
//! assert_eq!(batch.images.dims(), &[60, 1, 28, 28]);
//! # Ok(()) }
//! ```

mod atomic;
mod augment;
mod checksum;
mod cifar;
mod dataset;
mod error;
mod fetch;
mod gz;
mod idx;
mod loader;
mod locate;
mod manifest;
pub mod miniature;
mod mmap;
mod order;
mod rng;
mod shards;
mod source;
pub mod testing;

pub use atomic::{AtomicFile, write as write_atomic};
pub use augment::{Augment, Normalize, Transform};
pub use checksum::{Digests, digest_file};
pub use cifar::{CifarSource, PIXELS as CIFAR_PIXELS, RECORD as CIFAR_RECORD, write_batch as write_cifar_batch};
pub use dataset::{Batch, Dataset, EvalBatches, locate_split};
pub use error::Error;
pub use fetch::{FetchEvent, FetchOptions, FileStatus, fetch, verify};
pub use gz::raw_file;
pub use idx::{IdxHeader, IdxSource, parse_header as parse_idx_header, write_idx};
pub use loader::Loader;
pub use locate::{Locations, Origin};
pub use manifest::{Format, Manifest, RawDigest, RemoteFile, Split};
pub use mmap::Mapped;
pub use order::{DataOrder, Position};
pub use rng::{Rng, key as derive_key};
pub use shards::{PackIndex, PackOptions, PackReport, PackSplit, ShardSource, pack_imagenet};
pub use source::{ImageSource, ImageView};
