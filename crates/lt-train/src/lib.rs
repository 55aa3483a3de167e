//! `lt-train` owns a training run: optimizers with PyTorch semantics (SGD with momentum and weight
//! decay, Adam), learning-rate schedules (constant, milestones × gamma, linear warmup), step counts
//! in iterations or epochs, masked training (pruned weights stay exactly zero, their gradients and
//! optimizer state too), evaluation, a metrics log, and checkpoints that resume bit-identically.
//! It also holds the paper's presets (Figure 2).
//!
//! It does not own data formats (`lt-data`), networks (`lt-models`) or how masks are chosen
//! (`lt-prune`): a mask reaches it as a 0/1 tensor per prunable weight. Nothing here prints;
//! progress is reported through a callback. A run stops early, checkpointed, when asked to
//! ([`request_stop`], or SIGTERM once a binary calls [`stop_on_sigterm`]).

mod checkpoint;
mod device;
mod error;
mod gradients;
mod optim;
mod preset;
mod schedule;
mod steps;
mod stop;
mod trainer;

pub use checkpoint::{Checkpoint, CheckpointMeta};
pub use device::DeviceSpec;
pub use error::Error;
pub use gradients::gradients;
pub use optim::{Optimizer, OptimizerConfig};
pub use preset::{PRESETS, Preset};
pub use schedule::Schedule;
pub use steps::Steps;
pub use stop::{request_stop, stop_on_sigterm, stop_requested};
pub use trainer::{
    EVAL_BATCH, Evaluation, Masks, Progress, Record, RunConfig, Summary, TOP5_ABOVE, Trainer, evaluate, evaluate_first,
};
