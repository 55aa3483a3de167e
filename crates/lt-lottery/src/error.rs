//! The error type of `lt-lottery`.

use std::path::PathBuf;

/// An error of an experiment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request does not fit the experiment (a level not trained, a rewind point past T...).
    #[error("{0}")]
    Request(String),
    /// A file of the experiment store is unreadable or does not fit.
    #[error("{}: {message}", path.display())]
    Store {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Training failed.
    #[error(transparent)]
    Train(#[from] lt_train::Error),
    /// Pruning failed.
    #[error(transparent)]
    Prune(#[from] lt_prune::Error),
    /// A stability measurement failed.
    #[error(transparent)]
    Stability(#[from] lt_stability::Error),
    /// The data layer failed.
    #[error(transparent)]
    Data(#[from] lt_data::Error),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] lt_models::Error),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
