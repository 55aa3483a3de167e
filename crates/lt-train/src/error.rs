//! The error type of `lt-train`.

use std::path::PathBuf;

/// An error of a training run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hyperparameter is invalid.
    #[error("{0}")]
    Config(String),
    /// A step count could not be parsed.
    #[error("invalid step count {text:?}: {why} (write e.g. 500it, 6ep or 0)")]
    Steps {
        /// The text.
        text: String,
        /// Why.
        why: String,
    },
    /// The loss stopped being finite.
    #[error("loss is {loss} at iteration {iteration}: training diverged; the last good checkpoint is {}", last_good.as_ref().map_or("none".into(), |p| p.display().to_string()))]
    Diverged {
        /// The iteration.
        iteration: u64,
        /// The loss value.
        loss: f32,
        /// The checkpoint to go back to.
        last_good: Option<PathBuf>,
    },
    /// The run was asked to stop ([`crate::request_stop`], e.g. on SIGTERM) and wrote its resume
    /// checkpoint; the same run started again continues from there.
    #[error("stopped at iteration {iteration} as asked (SIGTERM); the resume checkpoint {} is written, and the same command resumes from it", checkpoint.display())]
    Interrupted {
        /// The last completed iteration.
        iteration: u64,
        /// The resume checkpoint.
        checkpoint: PathBuf,
    },
    /// A checkpoint file is unreadable or does not fit.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
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
