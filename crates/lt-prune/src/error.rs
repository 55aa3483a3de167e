//! The error type of `lt-prune`.

use std::path::PathBuf;

/// An error of masks and pruning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A requested amount is impossible.
    #[error("{0}")]
    Amount(String),
    /// Masks, weights or scores disagree on tensors or shapes.
    #[error("tensor {tensor}: {message}")]
    Tensor {
        /// The tensor.
        tensor: String,
        /// What disagrees.
        message: String,
    },
    /// A new mask breaks an invariant (from a strategy or a plugin).
    #[error("invalid mask from {source_name}: tensor {tensor}: {message}")]
    Invalid {
        /// Who made the mask.
        source_name: String,
        /// The tensor.
        tensor: String,
        /// The invariant broken.
        message: String,
    },
    /// A mask file is unreadable.
    #[error("mask {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A plugin could not be found, loaded or run.
    #[error("plugin {plugin}: {message}")]
    Plugin {
        /// The plugin (its name or path).
        plugin: String,
        /// What went wrong.
        message: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Data(#[from] lt_data::Error),
}
